def judge() -> None:
    """(being written)"""
    raise NotImplementedError
