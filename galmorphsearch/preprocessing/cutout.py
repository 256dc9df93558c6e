# placeholder: replaced by the real implementation
__all__ = ["GalaxyCutout"]


class GalaxyCutout:
    pass
