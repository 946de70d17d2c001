"""Entry point of the ``depth_pro_node`` executable (placeholder)."""

import sys


def main(argv: list[str] | None = None) -> int:
    """Explain that the node is not implemented yet; return exit status 2."""
    del argv
    print(
        "depth_pro_node: the ROS 2 node is not implemented yet; it arrives with a later "
        "issue. Meanwhile use `depth-pro-ros image PHOTO --checkpoint CKPT`.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
