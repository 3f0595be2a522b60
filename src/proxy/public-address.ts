/**
 * Which IP addresses an upstream nobody configured may be dialled at: public unicast only. A client names
 * such an upstream (proxy/<host>/…, `?ns=`, a redirect, a token realm), so without this rule the cache is
 * an open proxy into the server's own network: loopback services, the LAN, the cloud metadata service.
 * Ranges from the IANA special-purpose address registries (RFC 6890 and its updates).
 */
import { isIPv4, isIPv6 } from 'node:net';

/** [first address, prefix length, what it is]: IPv4 ranges that are not public unicast. */
const IPV4_SPECIAL: ReadonlyArray<[string, number, string]> = [
  ['0.0.0.0', 8, 'this network'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared address space (CGNAT; also cloud metadata 100.100.100.200)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local (also cloud metadata 169.254.169.254)'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, '6to4 relay anycast'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved (and broadcast)'],
];

/**
 * Why `address` (an IPv4 or IPv6 literal, brackets and zone allowed) is not a public unicast address,
 * or undefined when it is one. Anything that is not an IP address at all is refused too.
 */
export function nonPublicReason(address: string): string | undefined {
  const literal = address.replace(/^\[(.*)\]$/, '$1');
  if (isIPv4(literal)) return ipv4Reason(ipv4Bytes(literal));
  const bare = literal.split('%')[0];
  if (isIPv6(bare)) return ipv6Reason(ipv6Bytes(bare));
  return 'not an IP address';
}

export function isPublicAddress(address: string): boolean {
  return nonPublicReason(address) === undefined;
}

function ipv4Reason(bytes: number[]): string | undefined {
  const value = toUint32(bytes);
  for (const [first, prefix, reason] of IPV4_SPECIAL) {
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    if ((value & mask) >>> 0 === toUint32(ipv4Bytes(first))) return reason;
  }
  return undefined;
}

function ipv6Reason(bytes: number[]): string | undefined {
  const startsWith = (prefix: number[], bits: number) => {
    for (let bit = 0; bit < bits; bit++) {
      const byte = bit >> 3;
      const mask = 0x80 >> (bit & 7);
      if ((bytes[byte] & mask) !== (prefix[byte] & mask)) return false;
    }
    return true;
  };
  const zeros = Array<number>(16).fill(0);
  // An IPv4 address inside an IPv6 one reaches that IPv4 address: it gets the IPv4 rule.
  if (startsWith([...zeros.slice(0, 10), 0xff, 0xff], 96)) return embedded(bytes.slice(12), 'IPv4-mapped');
  if (startsWith([0x00, 0x64, 0xff, 0x9b, ...zeros.slice(4)], 96)) return embedded(bytes.slice(12), 'NAT64');
  if (startsWith([0x20, 0x02], 16)) return embedded(bytes.slice(2, 6), '6to4');
  if (bytes.every((byte) => byte === 0)) return 'unspecified';
  if (startsWith(zeros, 120) && bytes[15] === 1) return 'loopback';
  if (startsWith(zeros, 8)) return 'reserved (IPv4-compatible and others)';
  if (startsWith([0xfc], 7)) return 'unique local (private; also cloud metadata fd00:ec2::254)';
  if (startsWith([0xfe, 0x80], 10)) return 'link-local';
  if (startsWith([0xfe, 0xc0], 10)) return 'site-local';
  if (startsWith([0xff], 8)) return 'multicast';
  // Global unicast is 2000::/3; the rest of the space is reserved.
  if (!startsWith([0x20], 3)) return 'reserved';
  if (startsWith([0x20, 0x01, 0x00, 0x00], 23)) return 'IETF protocol assignments (Teredo and others)';
  if (startsWith([0x20, 0x01, 0x0d, 0xb8], 32)) return 'documentation';
  if (startsWith([0x3f, 0xff], 20)) return 'documentation';
  return undefined;

  function embedded(ipv4: number[], kind: string): string | undefined {
    const reason = ipv4Reason(ipv4);
    return reason === undefined ? undefined : `${kind} ${reason}`;
  }
}

function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

function toUint32(bytes: number[]): number {
  return ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
}

/** The 16 bytes of a valid IPv6 literal (as net.isIPv6 accepts it, without zone). */
function ipv6Bytes(address: string): number[] {
  let text = address;
  // A dotted IPv4 tail (::ffff:127.0.0.1) is two groups.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const [a, b, c, d] = ipv4Bytes(tail[1]);
    text = `${text.slice(0, tail.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const groupsOf = (part: string) => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const [head, rest] = text.split('::');
  const first = groupsOf(head);
  const last = rest === undefined ? [] : groupsOf(rest);
  const groups = [...first, ...Array<number>(8 - first.length - last.length).fill(0), ...last];
  return groups.flatMap((group) => [group >> 8, group & 0xff]);
}
