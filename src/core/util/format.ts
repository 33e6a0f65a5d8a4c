/**
 * Human-readable sizes, rates and times, shared by mcctl, the daemon's
 * messages and library users.
 *
 * Sizes use binary multiples (1 KiB = 1024 bytes, as the seed's
 * `format_size` divided) and therefore the IEC labels KiB, MiB, GiB, … so a
 * label never claims a decimal multiple it is not. Every size mcctl prints
 * goes through formatSize, so all of its output uses the same units.
 */
const SIZE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** "0 B", "1023 B", "1.0 KiB", "1.5 MiB": 1024-based, one decimal, IEC labels. */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  let v = Math.abs(bytes);
  let i = 0;
  // Round first, so 1023.96 KiB does not print as "1024.0 KiB".
  while (i < SIZE_UNITS.length - 1 && (i === 0 ? v >= 1024 : Math.round(v * 10) / 10 >= 1024)) {
    v /= 1024;
    i++;
  }
  const sign = bytes < 0 ? '-' : '';
  return i === 0 ? `${sign}${v} B` : `${sign}${v.toFixed(1)} ${SIZE_UNITS[i]}`;
}

/** A transfer rate with formatSize's units: "1.2 MiB/s". */
export function formatRate(bytesPerSec: number): string {
  if (!Number.isFinite(bytesPerSec) || bytesPerSec < 0) return '-';
  return `${formatSize(Math.round(bytesPerSec))}/s`;
}

/** A remaining time as a clock: "0:07", "12:30", "1:02:03"; "--:--" when unknown. */
export function formatEta(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return '--:--';
  let s = Math.ceil(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const ss = String(s).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
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
