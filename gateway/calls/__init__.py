"""The back-to-back user agent: a Call holds two legs and drives the rest."""
