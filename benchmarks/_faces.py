"""Cartoon face crops drawn with Pillow: the closest to anime faces these machines can have.

Skin-coloured faces with hair, eyes, irises, highlights and a mouth, on gradient
backgrounds, in varied sizes, aspect ratios, colours and blur, so that the image
statistics (flat regions, hard edges, saturated colours) resemble anime face crops far
more than noise does. They stand in for the real images this sandbox cannot download.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def cartoon_faces(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        width, height = int(rng.integers(160, 640)), int(rng.integers(160, 640))
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ramp = np.linspace(0, 1, height)[:, None, None]
        background = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
        image = Image.fromarray(np.broadcast_to(background, (height, width, 3)).copy(), 'RGB')
        draw = ImageDraw.Draw(image)
        cx, cy = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.4, 0.65)
        face_w, face_h = min(width, height) * rng.uniform(0.35, 0.7), min(width, height) * rng.uniform(0.4, 0.75)
        hair = tuple(int(v) for v in rng.integers(0, 256, 3))
        skin = (int(rng.integers(230, 256)), int(rng.integers(195, 235)), int(rng.integers(170, 215)))
        draw.ellipse((cx - face_w * 0.65, cy - face_h * 0.85, cx + face_w * 0.65, cy + face_h * 0.35), fill=hair)
        draw.ellipse((cx - face_w / 2, cy - face_h / 2, cx + face_w / 2, cy + face_h / 2), fill=skin,
                     outline=(60, 40, 40), width=max(1, int(face_w / 80)))
        draw.chord((cx - face_w * 0.6, cy - face_h * 0.8, cx + face_w * 0.6, cy - face_h * 0.05), 180, 360, fill=hair)
        iris = tuple(int(v) for v in rng.integers(0, 256, 3))
        for side in (-1, 1):
            ex, ey = cx + side * face_w * 0.2, cy + face_h * 0.05
            ew, eh = face_w * 0.09, face_h * rng.uniform(0.08, 0.14)
            draw.ellipse((ex - ew, ey - eh, ex + ew, ey + eh), fill=(255, 255, 255), outline=(30, 20, 20),
                         width=max(1, int(face_w / 60)))
            draw.ellipse((ex - ew * 0.7, ey - eh * 0.8, ex + ew * 0.7, ey + eh * 0.9), fill=iris)
            draw.ellipse((ex - ew * 0.25, ey - eh * 0.5, ex + ew * 0.1, ey - eh * 0.1), fill=(255, 255, 255))
        mouth_y = cy + face_h * 0.3
        draw.arc((cx - face_w * 0.1, mouth_y - face_h * 0.05, cx + face_w * 0.1, mouth_y + face_h * 0.05), 0, 180,
                 fill=(150, 50, 60), width=max(1, int(face_w / 70)))
        blur = float(rng.choice([0, 0, 0.6, 1.5, 3.0]))
        if blur:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        noise = rng.normal(0, rng.uniform(0, 6), (height, width, 3))
        images.append(Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8), 'RGB'))
    return images
