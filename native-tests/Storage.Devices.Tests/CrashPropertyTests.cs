using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Storage.Devices.Tests;

/// <summary>
/// Crash semantics of <see cref="FaultInjectingDevice"/> against a model: random writes (plain and FUA), flushes and
/// trims, then a crash. Every byte made durable survives; a drop crash loses every un-flushed write; after a torn crash
/// each sector holds its durable bytes or the bytes of one of its un-flushed writes, never anything else. Every write
/// carries unique random bytes, so "one of the writes" is exact.
/// </summary>
public class CrashPropertyTests
{
    private const int Sector = 512;
    private const int Sectors = 48;

    public sealed record Op(int Kind, int Start, int Count)
    {
        public const int Write = 0, FuaWrite = 1, Flush = 2, Trim = 3;

        public override string ToString() => Kind switch
        {
            Write => $"write {Start}+{Count}",
            FuaWrite => $"fua-write {Start}+{Count}",
            Flush => "flush",
            _ => $"trim {Start}+{Count}",
        };
    }

    public sealed record Scenario(Op[] Ops, CrashMode Mode, int Seed)
    {
        public override string ToString() => $"seed {Seed}, {Mode} after: {string.Join("; ", Ops.Select(o => o.ToString()))}";
    }

    private static Arbitrary<Scenario> Scenarios { get; } =
        (from ops in Gen.ArrayOf(
             from kind in Gen.Frequency((8, Gen.Constant(Op.Write)), (2, Gen.Constant(Op.FuaWrite)), (3, Gen.Constant(Op.Flush)), (1, Gen.Constant(Op.Trim)))
             from start in Gen.Choose(0, Sectors - 1)
             from count in Gen.Choose(1, 12)
             select new Op(kind, start, Math.Min(count, Sectors - start)))
         from mode in Gen.Elements(CrashMode.DropUnflushed, CrashMode.TearUnflushed)
         from seed in Gen.Choose(0, int.MaxValue)
         select new Scenario(ops, mode, seed)).ToArbitrary();

    [Property(MaxTest = 300)]
    public Property Flushed_bytes_survive_and_unflushed_sectors_hold_old_or_new_bytes() =>
        Prop.ForAll(Scenarios, Check);

    /// <summary>The same model over a torn crash of many small writes to few sectors: several versions per sector.</summary>
    [Property(MaxTest = 100)]
    public Property A_torn_crash_may_keep_any_unflushed_version_of_a_sector() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var ops = Enumerable.Range(0, 40).Select(_ => random.Next(10) == 0 ? new Op(Op.Flush, 0, 0) : new Op(Op.Write, random.Next(4), 1 + random.Next(3))).ToArray();
            Check(new Scenario(ops, CrashMode.TearUnflushed, seed));
        });

    private static void Check(Scenario scenario)
    {
        using var inner = new MemoryBlockDevice(Sectors * Sector, Sector);
        using var device = new FaultInjectingDevice(inner, scenario.Seed, leaveInnerOpen: true);
        var durable = Enumerable.Range(0, Sectors).Select(_ => new byte[Sector]).ToArray();
        var unflushed = Enumerable.Range(0, Sectors).Select(_ => new List<byte[]>()).ToArray();
        var content = new Random(scenario.Seed);
        var all = new byte[Sectors * Sector];

        foreach (var op in scenario.Ops)
        {
            switch (op.Kind)
            {
                case Op.Write or Op.FuaWrite:
                    var data = new byte[op.Count * Sector];
                    content.NextBytes(data);
                    Sync.Run(device.WriteAsync((long)op.Start * Sector, data, op.Kind == Op.FuaWrite));
                    for (int i = 0; i < op.Count; i++)
                    {
                        var bytes = data.AsSpan(i * Sector, Sector).ToArray();
                        if (op.Kind == Op.FuaWrite)
                        {
                            durable[op.Start + i] = bytes;
                            unflushed[op.Start + i].Clear();
                        }
                        else
                        {
                            unflushed[op.Start + i].Add(bytes);
                        }
                    }
                    break;
                case Op.Flush:
                    Sync.Run(device.FlushAsync());
                    for (int s = 0; s < Sectors; s++)
                    {
                        if (unflushed[s].Count > 0)
                            durable[s] = unflushed[s][^1];
                        unflushed[s].Clear();
                    }
                    break;
                default:
                    Sync.Run(device.TrimAsync((long)op.Start * Sector, (long)op.Count * Sector));
                    for (int i = op.Start; i < op.Start + op.Count; i++)
                    {
                        durable[i] = new byte[Sector];
                        unflushed[i].Clear();
                    }
                    break;
            }

            // Read-your-writes before the crash: the newest write of each sector.
            Sync.Run(device.ReadAsync(0, all));
            for (int s = 0; s < Sectors; s++)
            {
                var expected = unflushed[s].Count > 0 ? unflushed[s][^1] : durable[s];
                Assert.True(all.AsSpan(s * Sector, Sector).SequenceEqual(expected), $"sector {s} does not read its newest write after {op}");
            }
            Assert.Equal(unflushed.Count(u => u.Count > 0), device.UnflushedSectors);
        }

        Sync.Run(device.CrashAsync(scenario.Mode));
        device.Restart();
        Sync.Run(device.ReadAsync(0, all));
        Assert.True(all.AsSpan().SequenceEqual(inner.Bytes), "after restart the device must read what the inner device holds");
        for (int s = 0; s < Sectors; s++)
        {
            var actual = all.AsSpan(s * Sector, Sector);
            if (actual.SequenceEqual(durable[s]))
                continue;
            Assert.True(scenario.Mode == CrashMode.TearUnflushed, $"sector {s} lost its durable bytes in a drop crash ({unflushed[s].Count} unflushed writes)");
            bool isUnflushedWrite = false;
            foreach (var version in unflushed[s])
                isUnflushedWrite |= actual.SequenceEqual(version);
            Assert.True(isUnflushedWrite, $"sector {s} holds bytes that are neither durable nor any of its {unflushed[s].Count} unflushed writes");
        }
    }
}

/// <summary>Runs a device call that must complete without blocking (a memory-backed device with no latency).</summary>
internal static class Sync
{
    public static void Run(ValueTask task)
    {
        Assert.True(task.IsCompleted, "the call did not complete synchronously");
        task.GetAwaiter().GetResult();
    }
}
