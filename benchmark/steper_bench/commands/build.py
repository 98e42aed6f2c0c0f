def build() -> None:
    """(being written)"""
    raise NotImplementedError
