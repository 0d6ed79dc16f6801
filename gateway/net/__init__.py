"""asyncio transports for SIP (UDP, TCP) and the timer wheel."""
