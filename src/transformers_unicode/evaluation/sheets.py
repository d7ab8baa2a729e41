"""PNG contact sheets: images to look at beside the numbers of a report."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Greedy word wrap by rendered width (a newline in `text` starts a new line)."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        words = []
        for word in paragraph.split():  # a word wider than the cell is cut into pieces that fit
            while draw.textlength(word, font=font) > width and len(word) > 1:
                cut = max(
                    1,
                    max(i for i in range(1, len(word) + 1) if draw.textlength(word[:i], font=font) <= width),
                )
                words.append(word[:cut])
                word = word[cut:]
            words.append(word)
        for word in words:
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def contact_sheet(
    cells: list[tuple[list[Image.Image], str]],
    columns: int = 4,
    image_side: int = 128,
    caption_lines: int = 3,
    title: str | None = None,
) -> Image.Image:
    """A grid of cells, each a row of images (e.g. original | reconstruction) above a wrapped caption.

    Small renders are enlarged with NEAREST so that 64 x 64 codes stay visible as pixels, not blur.
    """
    if not cells:
        raise ValueError("contact_sheet needs at least one cell.")
    font = ImageFont.load_default(size=13)
    per_cell = max(len(images) for images, _ in cells)
    line_height, pad = 16, 8
    cell_w = per_cell * image_side + (per_cell - 1) * 4
    cell_h = image_side + caption_lines * line_height + pad
    header = 28 if title else 0
    rows = -(-len(cells) // columns)
    sheet = Image.new(
        "RGB",
        (columns * (cell_w + pad) + pad, header + rows * (cell_h + pad) + pad),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 6), title, fill="black", font=ImageFont.load_default(size=16))
    for index, (images, caption) in enumerate(cells):
        x = pad + (index % columns) * (cell_w + pad)
        y = header + pad + (index // columns) * (cell_h + pad)
        for offset, image in enumerate(images):
            tile = image.convert("RGB").resize((image_side, image_side), Image.NEAREST)
            sheet.paste(tile, (x + offset * (image_side + 4), y))
            draw.rectangle(
                [
                    x + offset * (image_side + 4),
                    y,
                    x + offset * (image_side + 4) + image_side - 1,
                    y + image_side - 1,
                ],
                outline=(200, 200, 200),
            )
        lines = _wrap(draw, caption, font, cell_w)[:caption_lines]
        for line_index, line in enumerate(lines):
            draw.text((x, y + image_side + 2 + line_index * line_height), line, fill="black", font=font)
    return sheet


__all__ = ["contact_sheet"]
