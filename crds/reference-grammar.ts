/** The grammars of the two references a module source can hold: an https URL and an image reference. */

/**
 * An https URL, in the part of the URL grammar where the two parsers that read it agree on whether
 * it parses: Go's url.ParseRequestURI (the API server's CEL `isURL`/`url()`) and the WHATWG URL
 * parser (Node: the operator, the agent's download). Outside it they disagree, e.g. on
 * `https:///x.ko` (Go: no host; WHATWG: host x.ko), `https://a%41.com` and `https://h/%zz` (Go
 * refuses the escape), `https://h\x.ko` (WHATWG reads `\` as `/`), `https://999.1.1.1` and
 * `https://h:99999` (WHATWG refuses). So: optional userinfo; a host that is a DNS name whose last
 * label starts with a letter (WHATWG reads a numeric last label as IPv4), a dotted-quad IPv4 address
 * or a bracketed IPv6 address (both parsers check that it is one); a port up to 65535; path and
 * query of RFC 3986 characters and %XX escapes; no fragment.
 */
const URL_USERINFO = String.raw`([-A-Za-z0-9._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*@`;
const URL_DNS_NAME = String.raw`([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\.)*[A-Za-z]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\.?`;
const URL_IPV4_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const URL_IPV4 = String.raw`(${URL_IPV4_OCTET}\.){3}${URL_IPV4_OCTET}`;
const URL_IPV6 = String.raw`\[[0-9A-Fa-f:.]{2,45}\]`;
const URL_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})";
const URL_CHAR = String.raw`([-A-Za-z0-9._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})`;
export const HTTPS_URL = new RegExp(
  String.raw`^https://(${URL_USERINFO})?(${URL_DNS_NAME}|${URL_IPV4}|${URL_IPV6})(:${URL_PORT})?(/${URL_CHAR}*)?(\?(${URL_CHAR}|\?)*)?$`,
);

/**
 * A container image reference in the grammar of github.com/distribution/reference (what the
 * container runtime parses): [host[:port]/]path[:tag][@digest], the path in lower case.
 */
const IMAGE_DOMAIN_COMPONENT = "([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const IMAGE_DOMAIN = String.raw`(${IMAGE_DOMAIN_COMPONENT}(\.${IMAGE_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(:[0-9]+)?`;
const IMAGE_PATH_COMPONENT = "[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*";
const IMAGE_TAG = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
const IMAGE_DIGEST = "[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
export const IMAGE_REFERENCE = new RegExp(
  `^(${IMAGE_DOMAIN}/)?${IMAGE_PATH_COMPONENT}(/${IMAGE_PATH_COMPONENT})*(:${IMAGE_TAG})?(@${IMAGE_DIGEST})?$`,
);
