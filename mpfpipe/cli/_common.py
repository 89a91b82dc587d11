"""Shared CLI pieces: context settings and the ``--config FILE`` option."""
from __future__ import annotations

import click
import yaml

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 110}


def _yaml_default(param, val):
    """A YAML value as the option's default: a list for a single-valued option becomes the comma-separated text
    the command line takes (``block: [1, 256, 256]`` == ``--block 1,256,256``), unless the option's type takes
    lists as they are (``passes_lists``); a scalar for a repeatable option becomes a one-item list."""
    multiple = getattr(param, "multiple", False)
    if isinstance(val, (list, tuple)) and not multiple and not getattr(param.type, "passes_lists", False):
        return ",".join(str(v) for v in val)
    if multiple and not isinstance(val, (list, tuple)):
        return [val]
    return val


def _load_config(ctx, param, value):
    if value is None:
        return None
    try:
        with open(value) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc.strerror}", ctx=ctx, param=param) from None
    except UnicodeDecodeError:
        raise click.BadParameter(f"{value} is not a text (YAML) file", ctx=ctx, param=param) from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{value} is not valid YAML: {exc}", ctx=ctx, param=param) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value} must hold a mapping of option names to values", ctx=ctx, param=param)
    known = {p.name: p for p in ctx.command.params}
    for p in list(known.values()):  # the option's own spelling too: `size:` for --size (whose value is `sizes`)
        for opt in getattr(p, "opts", ()):
            if opt.startswith("--"):
                known.setdefault(opt[2:].replace("-", "_"), p)
    defaults = {}
    for key, val in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise click.BadParameter(f"{value}: unknown option {key!r} for '{ctx.command.name}'", ctx=ctx,
                                     param=param)
        defaults[known[name].name] = _yaml_default(known[name], val)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def config_option(f):
    """``--config FILE``: YAML defaults for the command's options (processed before the other options)."""
    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=_load_config, help="YAML file of option values (command-line options win).")(f)

