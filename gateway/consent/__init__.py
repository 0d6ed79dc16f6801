"""Recording consent: jurisdictions of a call's parties, the rules that apply to them.

``jurisdiction`` places each party (from its number or an assertion),
``rules`` holds the rule set read from ``config/consent-rules.toml`` and
decides the strictest rule for a call.
"""
