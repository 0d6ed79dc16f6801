"""callgate: a call-recording privacy gateway for VoIP."""
