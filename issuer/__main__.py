from issuer.cli import main

raise SystemExit(main())
