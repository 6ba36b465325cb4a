"""What the four scripts' command lines share."""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with every default shown, except None ones: their help says what None means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)
