from stemserver.cli import main

raise SystemExit(main())
