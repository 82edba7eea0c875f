"""Trading venues: one adapter package per broker or data vendor (today only :mod:`.oanda`)."""
