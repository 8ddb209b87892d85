"""python train.py [group=option ...] [key=value ...]   (see README.md): the same as `poolhead train ...`."""

from poolhead.use.train import main

if __name__ == "__main__":
    main(program=__file__)  # the closing "Next:" lines name this file
