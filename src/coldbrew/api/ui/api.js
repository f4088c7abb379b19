// The dashboard's one door to the API: every request carries the session's key.
const KEY = "coldbrew.key";

export class ApiError extends Error {
  constructor(status, message, hint) {
    super(message);
    this.status = status;
    this.hint = hint || "";
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export async function api(path, key = getKey()) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${key || ""}` },
    cache: "no-store",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || {};
    throw new ApiError(response.status, error.message || response.statusText, error.hint);
  }
  return body;
}

// `/v1/usage?since=` for "today", "this week" and "this month" (UTC), as whole hours back from
// now: the API rounds the window's start down to its hour, so this is the period's first hour.
export function periods(nowMs = Date.now()) {
  const now = new Date(nowMs);
  const day = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const weekday = (now.getUTCDay() + 6) % 7; // Monday = 0
  const week = day - weekday * 86400000;
  const month = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const hours = (start) => `${Math.floor((nowMs - start) / 3600000)}h`;
  return [
    { id: "today", label: "Today (UTC)", since: hours(day) },
    { id: "week", label: "This week (since Monday, UTC)", since: hours(week) },
    { id: "month", label: "This month (UTC)", since: hours(month) },
  ];
}
