// The add-in's icons (the manifest names 16, 32, 64 and 80 px) drawn in code and encoded
// as PNG with node:zlib only, so the repository holds no binary files: a rounded square in
// the brand blue with a white 3x3 grid mark.
import { deflateSync } from "node:zlib";

const BRAND = [0x0f, 0x6c, 0xbd]; // Office-like blue
const WHITE = [0xff, 0xff, 0xff];

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "ascii");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** Coverage (0..1) of pixel (x, y) by a rounded square of side n and corner radius r. */
function inRoundedSquare(x, y, n, r) {
  // 4x4 supersampling keeps the corners smooth at 16 px.
  let hits = 0;
  for (let sy = 0; sy < 4; sy++) {
    for (let sx = 0; sx < 4; sx++) {
      const px = x + (sx + 0.5) / 4;
      const py = y + (sy + 0.5) / 4;
      const cx = Math.min(Math.max(px, r), n - r);
      const cy = Math.min(Math.max(py, r), n - r);
      if ((px - cx) ** 2 + (py - cy) ** 2 <= r * r) hits++;
    }
  }
  return hits / 16;
}

/** Whether pixel (x, y) is on a line of the 3x3 grid mark inside an n-px icon. */
function onGrid(x, y, n) {
  const margin = Math.round(n * 0.22);
  const inner = n - 2 * margin;
  const stroke = Math.max(1, Math.round(n / 16));
  if (x < margin || y < margin || x >= n - margin || y >= n - margin) return false;
  const lines = [0, 1, 2, 3].map((i) => margin + Math.round((i * (inner - stroke)) / 3));
  const near = (v) => lines.some((l) => v >= l && v < l + stroke);
  return near(x) || near(y);
}

/** A PNG (RGBA, 8 bit) of the icon at size n. */
export function iconPng(n) {
  const radius = n * 0.2;
  const rows = [];
  for (let y = 0; y < n; y++) {
    const row = Buffer.alloc(1 + n * 4); // filter byte 0 (none), then RGBA
    for (let x = 0; x < n; x++) {
      const alpha = inRoundedSquare(x, y, n, radius);
      const [r, g, b] = onGrid(x, y, n) ? WHITE : BRAND;
      row.set([r, g, b, Math.round(alpha * 255)], 1 + x * 4);
    }
    rows.push(row);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(n, 0);
  header.writeUInt32BE(n, 4);
  header.set([8, 6, 0, 0, 0], 8); // 8 bit, RGBA, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(Buffer.concat(rows), { level: 9 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

export const ICON_SIZES = [16, 32, 64, 80];
