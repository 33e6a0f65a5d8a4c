/** Human sizes as the seed's `format_size`: 1024-based, one decimal. */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let v = Math.abs(bytes);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const sign = bytes < 0 ? '-' : '';
  return i === 0 ? `${sign}${v} B` : `${sign}${v.toFixed(1)} ${units[i]}`;
}

/** "3m ago", "in 2h", for people. `now` is injectable for tests. */
export function formatRelative(when: Date | string | number, now: number = Date.now()): string {
  const t = typeof when === 'object' ? when.getTime() : new Date(when).getTime();
  if (!Number.isFinite(t)) return 'never';
  const d = t - now;
  const a = Math.abs(d);
  const s = Math.round(a / 1000);
  let txt: string;
  if (s < 60) txt = `${s}s`;
  else if (s < 3600) txt = `${Math.round(s / 60)}m`;
  else if (s < 86400) txt = `${Math.round(s / 3600)}h`;
  else txt = `${Math.round(s / 86400)}d`;
  if (s < 1) return 'now';
  return d < 0 ? `${txt} ago` : `in ${txt}`;
}

/** "1h 2m 3s" for durations (uptime, sweep times). */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return [h ? `${h}h` : '', m ? `${m}m` : '', `${s}s`].filter(Boolean).join(' ');
}
