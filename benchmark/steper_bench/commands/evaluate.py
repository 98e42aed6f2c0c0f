def evaluate() -> None:
    """(being written)"""
    raise NotImplementedError
