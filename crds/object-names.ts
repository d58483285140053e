/** Names of Kubernetes objects and keys, as the API server validates them. */

/** A DNS subdomain (RFC 1123): the name of a ConfigMap, a Secret, most objects. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A key of a ConfigMap's or a Secret's data. */
export const CONFIGMAP_KEY = /^[-._a-zA-Z0-9]+$/;
