def publish() -> None:
    """(being written)"""
    raise NotImplementedError
