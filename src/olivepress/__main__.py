from olivepress.cli.main import main

raise SystemExit(main())
