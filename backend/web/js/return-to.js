// Coming back after signing in. A page that sends people to the dashboard's
// sign-in (`/`) names itself in `?next=`; once signed in (or registered),
// the dashboard goes back there. Only a path on this site is accepted: an
// open redirect would let any link send a freshly signed-in user to a
// look-alike site.

/** The sign-in page, coming back to this page afterwards. */
export function signInHref() {
  return `/?${new URLSearchParams({ next: location.pathname + location.search })}`;
}

/**
 * Where `?next=` asks to go, as an absolute URL on this origin, or null
 * (none, or not allowed). Absolute, so that no path can be read as
 * `//host` once opened.
 */
export function returnUrl(search = location.search) {
  const next = new URLSearchParams(search).get("next");
  // A path from the root: not `//host` nor `/\host` (browsers read a
  // backslash as a slash), not `https:` or `javascript:`.
  if (!next || !/^\/(?![/\\])/.test(next)) return null;
  let url;
  try {
    url = new URL(next, location.origin);
  } catch {
    return null;
  }
  // Judge the URL the browser would really open: parsing drops tabs and
  // newlines (`/\t/host` is `//host`) and resolves dot segments
  // (`/./\host` is `//host`).
  if (url.origin !== location.origin || url.pathname === "/" || url.pathname.startsWith("//")) return null;
  return url.href;
}
