"""Sans-IO SIP (RFC 3261): messages, URIs, SDP, transactions and dialogs.

Nothing here opens a socket or imports asyncio: bytes and a clock go in,
events and bytes to send come out.
"""
