"""`python -m aeff` and the console script `aeff`: signals end the process cleanly from
its first instant (`interrupts.exiting`), then the app runs (importing it takes a second
or more)."""

from aeff import interrupts


def main() -> None:
    with interrupts.exiting(before="the trial began"):
        from aeff.cli.app import main as app_main

        app_main()


if __name__ == "__main__":
    main()
