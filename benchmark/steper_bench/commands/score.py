def score() -> None:
    """(being written)"""
    raise NotImplementedError
