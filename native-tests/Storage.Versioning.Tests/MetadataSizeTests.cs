namespace Storage.Versioning.Tests;

/// <summary>
/// What the map costs: the checkpoint's bytes per mapped block on disk and the head map's bytes per block in memory,
/// for a volume of 1 M blocks written in random order over many transaction groups, physical blocks spread over a
/// 1 TiB pool of default-sized (16 KiB) blocks. Target: metadata ≤ 0.1 % of mapped data at the default block size.
/// </summary>
[Collection(nameof(MetadataSizeTests))]
public class MetadataSizeTests(ITestOutputHelper output)
{
    [Fact]
    public void Checkpoint_and_memory_per_mapped_block_stay_small()
    {
        const int blocks = 1 << 20;
        const long poolBlocks = (1L << 40) / PoolCreateOptions.DefaultBlockSize;
        var random = new Random(1);
        var order = Enumerable.Range(0, blocks).OrderBy(_ => random.Next()).ToArray();
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var state = new PoolState(PoolCreateOptions.DefaultBlockSize);
        state.Apply(new PoolOp { Kind = PoolOpKind.CreateVolume, Volume = 1, Name = "v", Count = (long)blocks * PoolCreateOptions.DefaultBlockSize, Origin = -1 }, 1, null);
        for (int i = 0; i < blocks; i++)
            state.Apply(PoolOp.Map(1, order[i], random.NextInt64(poolBlocks), (uint)random.Next()), 2 + i / 1000, null);
        long memory = GC.GetTotalMemory(forceFullCollection: true) - before;
        var w = new VarintWriter(1 << 20);
        StateCodec.Write(state, w);
        double perBlock = (double)w.Length / blocks;
        double overhead = perBlock / PoolCreateOptions.DefaultBlockSize;
        output.WriteLine($"checkpoint {perBlock:F1} bytes per mapped block = {overhead * 100:F3} % of {PoolCreateOptions.DefaultBlockSize / 1024} KiB blocks ({perBlock * (1L << 40) / PoolCreateOptions.DefaultBlockSize / (1 << 20):F0} MiB per TiB); map in memory about {(double)memory / blocks:F1} bytes per block ({(double)memory / blocks * (1L << 40) / PoolCreateOptions.DefaultBlockSize / (1 << 20):F0} MiB per TiB)");
        Assert.True(overhead <= 0.001, $"checkpoint {perBlock:F1} bytes per block");
        Assert.InRange(memory / blocks, 16, 20);   // 16 bytes per entry and page overhead; less means the measurement broke
        var back = StateCodec.Read(PoolCreateOptions.DefaultBlockSize, w.Written);
        Assert.Equal(blocks, back.Volume(1).Head.Count);
        Assert.Equal(state.Volume(1).Head[order[77]], back.Volume(1).Head[order[77]]);
    }
}

/// <summary>Runs the memory measurement alone: other tests allocating meanwhile would count against it.</summary>
[CollectionDefinition(nameof(MetadataSizeTests), DisableParallelization = true)]
public class MetadataSizeGroup;
