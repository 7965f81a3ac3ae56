"""Sub-commands of `gridctl`; every module here exposes `register(subparsers)`."""
