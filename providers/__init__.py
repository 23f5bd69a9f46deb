"""One package per external system; each registers its connector types in
:mod:`providers.builtin`."""
