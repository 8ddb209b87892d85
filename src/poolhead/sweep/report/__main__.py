from poolhead.sweep.report import main

main()
