"""The package's old name `flowact_cli` still imports, as the same modules as `flowact`."""

import subprocess
import sys


def test_old_imports_are_the_new_modules():
    import flowact
    import flowact.model.vae
    import flowact_cli
    import flowact_cli.model.vae
    from flowact.render import render
    from flowact_cli.render import render as old_render

    assert flowact_cli is flowact and flowact_cli.model.vae is flowact.model.vae and old_render is render


def test_old_imports_in_a_fresh_process():
    code = "from flowact_cli.cli import main; import flowact.cli, sys; assert main is flowact.cli.main; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
