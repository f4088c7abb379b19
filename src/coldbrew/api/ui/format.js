// Formatting shared by the pages; tests format the API's numbers the same way.
export function usd(value) {
  if (value === null || value === undefined) return "–";
  const digits = value >= 1 ? 2 : value >= 0.01 ? 4 : 6;
  return `$${value.toFixed(digits)}`;
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  return value >= 10000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

export function pct(value) {
  if (value === null || value === undefined) return "–";
  return `${(value * 100).toFixed(1)}%`;
}

export function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function when(iso) {
  if (!iso) return "–";
  return new Date(iso).toISOString().replace("T", " ").slice(0, 19);
}
