#!/usr/bin/env python3
"""Screenshot of the Neovim client at work: runs nvim in a 100x30 pseudo-terminal, lets
test/screenshot_init.lua rewrite a range, and renders the terminal (pyte) to a PNG (Pillow)."""

import argparse
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import tempfile
import termios
import time

import pyte
from PIL import Image, ImageDraw, ImageFont

COLS, ROWS = 100, 30
DEFAULT_FG, DEFAULT_BG = (0xE0, 0xE2, 0xEA), (0x14, 0x16, 0x1B)
NAMED = {
    "black": (0x07, 0x08, 0x0D), "red": (0xFF, 0xC0, 0xB9), "green": (0xB3, 0xF6, 0xC0),
    "brown": (0xFC, 0xE0, 0x94), "yellow": (0xFC, 0xE0, 0x94), "blue": (0xA6, 0xDB, 0xFF),
    "magenta": (0xFF, 0xCA, 0xFF), "cyan": (0x8C, 0xF8, 0xF7), "white": (0xEE, 0xF1, 0xF8),
}


def color(c, default):
    if c == "default":
        return default
    if c in NAMED:
        return NAMED[c]
    name = c.replace("bright", "")
    if name in NAMED:
        return NAMED[name]
    if len(c) == 6:
        try:
            return tuple(int(c[i:i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            pass
    return default


def render(screen, font_path, out):
    size = 15
    font = ImageFont.truetype(font_path, size)
    bold_path = font_path.replace("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf")
    bold = ImageFont.truetype(bold_path, size) if os.path.exists(bold_path) else font
    cw = round(font.getlength("M"))
    ch = round(size * 1.35)
    pad = 12
    img = Image.new("RGB", (COLS * cw + 2 * pad, ROWS * ch + 2 * pad), DEFAULT_BG)
    d = ImageDraw.Draw(img)
    for y in range(ROWS):
        line = screen.buffer[y]
        for x in range(COLS):
            c = line[x]
            fg, bg = color(c.fg, DEFAULT_FG), color(c.bg, DEFAULT_BG)
            if c.reverse:
                fg, bg = bg, fg
            px, py = pad + x * cw, pad + y * ch
            d.rectangle([px, py, px + cw - 1, py + ch - 1], fill=bg)
            if c.data and c.data != " ":
                # box-drawing characters fill the cell; stretch vertical lines over the line gap
                if c.data in "│╭╮╰╯┃":
                    d.line([px + cw // 2, py, px + cw // 2, py + ch], fill=fg)
                    if c.data in "╭╮":
                        d.line([px + (cw // 2 if c.data == "╭" else 0), py + ch // 2,
                                px + (cw if c.data == "╭" else cw // 2), py + ch // 2], fill=fg)
                        d.rectangle([px, py, px + cw - 1, py + ch // 2 - 1], fill=bg)
                    if c.data in "╰╯":
                        d.line([px + (cw // 2 if c.data == "╰" else 0), py + ch // 2,
                                px + (cw if c.data == "╰" else cw // 2), py + ch // 2], fill=fg)
                        d.rectangle([px, py + ch // 2 + 1, px + cw - 1, py + ch - 1], fill=bg)
                elif c.data == "─":
                    d.line([px, py + ch // 2, px + cw, py + ch // 2], fill=fg)
                else:
                    d.text((px, py + (ch - size) // 2 - 1), c.data, font=bold if c.bold else font, fill=fg)
    img.save(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nvim", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--font", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=330)
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="pema-shot-") as tmp:
        return shoot(a, os.path.join(tmp, "mark"))


def shoot(a, mark):
    env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor", PEMA_SHOT_MARK=mark)
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)

    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(os.path.dirname(a.file))
        os.execvpe(a.nvim, [a.nvim, "-u", a.init, "-i", "NONE", "-n", a.file], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return False
                if not data:
                    return False
                stream.feed(data)
        return True

    start = time.time()
    try:
        while not os.path.exists(mark):
            if time.time() - start > a.timeout or not pump(0.5):
                print("screenshot: nvim did not finish the rewrite", file=sys.stderr)
                return 1
        pump(1.0)
        with open(mark) as f:
            if f.read() != "done":
                print("screenshot: the adapter did not become ready", file=sys.stderr)
                return 1
        render(screen, a.font, a.out)
        print("\n".join(screen.display))
        os.write(fd, b"\x1b:qa!\r")
        pump(3.0)
    finally:
        try:
            os.kill(pid, signal.SIGTERM)  # nvim stops its daemon on exit
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
