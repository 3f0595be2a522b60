import { isPublicAddress, nonPublicReason } from '../../../src/proxy/public-address';

describe('isPublicAddress: where an upstream nobody configured may be dialled', () => {
  test.each([
    '127.0.0.1',
    '127.255.255.254',
    '0.0.0.0',
    '10.0.0.5',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254', // cloud metadata (AWS, GCP, Azure)
    '100.64.0.1',
    '100.100.100.200', // Alibaba Cloud metadata
    '224.0.0.1',
    '239.255.255.250',
    '240.0.0.1',
    '255.255.255.255',
    '192.0.2.10',
    '198.18.0.1',
    '::',
    '::1',
    '[::1]',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:10.1.2.3',
    '::ffff:169.254.169.254',
    '::127.0.0.1', // IPv4-compatible
    '64:ff9b::a00:1', // NAT64 of 10.0.0.1
    '64:ff9b::127.0.0.1',
    '2002:7f00:1::1', // 6to4 of 127.0.0.1
    '2002:c0a8:101::', // 6to4 of 192.168.1.1
    'fc00::1',
    'fd00:ec2::254', // AWS metadata over IPv6
    'fe80::1',
    'fe80::1%eth0',
    'fec0::1',
    'ff02::1',
    '2001:db8::1',
    '2001::1', // Teredo
    '100::1',
    '4000::1',
    'localhost',
    'example.com',
    '',
  ])('%s is refused', (address) => {
    expect(isPublicAddress(address)).toBe(false);
    expect(nonPublicReason(address)).toEqual(expect.any(String));
  });

  test.each([
    '1.1.1.1',
    '8.8.8.8',
    '44.208.1.1',
    '172.15.255.255',
    '172.32.0.1',
    '192.169.0.1',
    '100.63.255.255',
    '100.128.0.1',
    '169.253.1.1',
    '223.255.255.255',
    '2600:1f18::1',
    '2a00:1450:4001:82a::200e',
    '[2606:4700::6810:84e5]',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808', // NAT64 of 8.8.8.8
    '2002:808:808::1', // 6to4 of 8.8.8.8
  ])('%s is public', (address) => {
    expect(nonPublicReason(address)).toBeUndefined();
  });
});
