from oma.sandbox.cli import main

raise SystemExit(main())
