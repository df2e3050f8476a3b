/**
 * Python's `datetime.strftime` for the chat templates' `strftime_now` global, in the C locale
 * (English names), as transformers' environment runs it on a typical server. Directives Python
 * passes to the C library and we do not know are kept as written, as glibc does.
 */
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

function dayOfYear(d: Date): number {
  const start = new Date(d.getFullYear(), 0, 1);
  const utcDay = Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - Date.UTC(start.getFullYear(), 0, 1);
  return Math.round(utcDay / 86_400_000) + 1;
}

/** `date` formatted by `format` in local time, directive by directive as Python's strftime does. */
export function strftime(date: Date, format: string): string {
  return format.replace(/%(.)/gs, (whole, directive: string) => {
    const hours12 = date.getHours() % 12 === 0 ? 12 : date.getHours() % 12;
    switch (directive) {
      case 'a': return DAYS[date.getDay()].slice(0, 3);
      case 'A': return DAYS[date.getDay()];
      case 'w': return String(date.getDay());
      case 'd': return pad(date.getDate());
      case 'e': return String(date.getDate()).padStart(2, ' ');
      case 'b': case 'h': return MONTHS[date.getMonth()].slice(0, 3);
      case 'B': return MONTHS[date.getMonth()];
      case 'm': return pad(date.getMonth() + 1);
      case 'y': return pad(date.getFullYear() % 100);
      case 'Y': return String(date.getFullYear());
      case 'H': return pad(date.getHours());
      case 'I': return pad(hours12);
      case 'p': return date.getHours() < 12 ? 'AM' : 'PM';
      case 'M': return pad(date.getMinutes());
      case 'S': return pad(date.getSeconds());
      case 'f': return pad(date.getMilliseconds() * 1000, 6);
      case 'j': return pad(dayOfYear(date), 3);
      case 'F': return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
      case 'T': return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
      case 'D': return `${pad(date.getMonth() + 1)}/${pad(date.getDate())}/${pad(date.getFullYear() % 100)}`;
      case 'n': return '\n';
      case 't': return '\t';
      case '%': return '%';
      default: return whole;
    }
  });
}
