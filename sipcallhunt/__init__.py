"""sipcallhunt: a SIP back-to-back user agent that turns a PBX extension into a call-hunting hotline."""

__all__ = ["__version__"]

__version__ = "0.1.0"
