from fqvae.cli import run

raise SystemExit(run())
