"""kbchat: talk to your internal knowledge base. The UI-free core (no Chainlit import here)."""

__version__ = "0.1.0"


def lazy_face(package: str, public: dict[str, str]):
    """A sub-package's module ``__getattr__`` for its public names (name -> the module that owns it): the
    owning module is imported on first use, so importing the package loads nothing heavy."""
    import importlib

    def __getattr__(name: str):
        module = public.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
