from fqvae.cli import main

raise SystemExit(main())
