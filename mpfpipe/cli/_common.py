"""Shared CLI pieces: context settings and the ``--config FILE`` option."""
from __future__ import annotations

import click
import yaml

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 110}


def _load_config(ctx, param, value):
    if value is None:
        return None
    try:
        with open(value) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc.strerror}", ctx=ctx, param=param) from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{value} is not valid YAML: {exc}", ctx=ctx, param=param) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value} must hold a mapping of option names to values", ctx=ctx, param=param)
    known = {p.name for p in ctx.command.params}
    defaults = {}
    for key, val in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise click.BadParameter(f"{value}: unknown option {key!r} for '{ctx.command.name}'", ctx=ctx,
                                     param=param)
        defaults[name] = val
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def config_option(f):
    """``--config FILE``: YAML defaults for the command's options (processed before the other options)."""
    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=_load_config, help="YAML file of option values (command-line options win).")(f)
