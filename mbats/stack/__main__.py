from mbats.stack.local import main

raise SystemExit(main())
