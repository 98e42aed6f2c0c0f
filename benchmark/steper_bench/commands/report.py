def report() -> None:
    """(being written)"""
    raise NotImplementedError
