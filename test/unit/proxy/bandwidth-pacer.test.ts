import { BandwidthPacer } from '../../../src/proxy/cache-sync';

describe('BandwidthPacer (sync_bandwidth)', () => {
  const MiB = 1024 * 1024;
  let clock: number;
  let waits: number[];
  const pacer = (rate: number) =>
    new BandwidthPacer(rate, () => clock, async (ms) => {
      waits.push(ms);
      clock += ms;
    });
  const signal = new AbortController().signal;

  beforeEach(() => {
    clock = 1_000_000;
    waits = [];
  });

  it('makes the next blob of an upstream wait until the bytes fetched fit the rate', async () => {
    const paced = pacer(10 * MiB);
    await paced.wait('hub', signal);
    paced.charge('hub', 20 * MiB); // 2 s worth at 10 MiB/s
    clock += 500; // the transfer took 0.5 s
    await paced.wait('hub', signal);
    expect(waits).toEqual([1500]);
    paced.charge('hub', 5 * MiB); // booked after the 2 s already booked: 0.5 s more
    await paced.wait('hub', signal);
    expect(waits).toEqual([1500, 500]);
  });

  it('paces each upstream on its own', async () => {
    const paced = pacer(MiB);
    paced.charge('hub', 3 * MiB);
    await paced.wait('ghcr', signal);
    expect(waits).toEqual([]);
    await paced.wait('hub', signal);
    expect(waits).toEqual([3000]);
  });

  it('never waits without a limit, nor once the booked time has passed', async () => {
    const unlimited = pacer(0);
    unlimited.charge('hub', 1024 * MiB);
    await unlimited.wait('hub', signal);
    const paced = pacer(MiB);
    paced.charge('hub', MiB);
    clock += 5000;
    await paced.wait('hub', signal);
    expect(waits).toEqual([]);
  });
});
