using System.Security.Cryptography;
using Storage.Devices;
using Storage.Raid;

namespace Storage.Versioning;

/// <summary>
/// A pool of thin volumes on one device (normally a <see cref="RaidArray"/>): copy-on-write blocks with a version and
/// a checksum in every map entry, O(1) snapshots, clones, rollback, self-healing reads and incremental send/receive.
/// Metadata changes go to an intent log committed per transaction group; the whole state is checkpointed now and then.
/// A crash leaves the last committed transaction group; a flush or FUA write commits.
/// </summary>
public sealed partial class Pool : IAsyncDisposable, IDisposable
{
    private const int PreambleBytes = 64 * 1024;
    private readonly IBlockDevice _device;
    private readonly RaidArray? _array;
    private readonly PoolOpenOptions _options;
    private readonly PoolState _state;
    private readonly object _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _committer;
    private PoolSuperblock _super;
    private Exception? _failure;
    private int _disposed;

    private Pool(IBlockDevice device, PoolSuperblock super, PoolState state, long txg, long logHead, long logUsed, List<long> checkpointBlocks, PoolOpenOptions options)
    {
        _device = device;
        _array = device as RaidArray;
        _super = super;
        _state = state;
        _options = options;
        _committedTxg = txg;
        _openTxg = txg + 1;
        _logHead = logHead;
        _logUsed = logUsed;
        _checkpointBlocks = checkpointBlocks;
        _used = new ulong[(super.BlockCount + 63) / 64];
        _segmentUsed = new int[super.BlockCount / super.SegmentBlocks];
        _freshSegments = _segmentUsed.Length;
        foreach (long block in checkpointBlocks)
            MarkUsed(block);
        foreach (var volume in state.Volumes.Values)
        {
            foreach (var (_, entry) in volume.Head.Entries())
                MarkReferenced(volume, entry);
            foreach (var older in volume.History.Values)
            {
                foreach (var entry in older)
                    MarkReferenced(volume, entry);
            }
        }
        _committer = options.CommitInterval > TimeSpan.Zero ? Task.Run(CommitPeriodicallyAsync) : Task.CompletedTask;
    }

    /// <summary>The pool's name.</summary>
    public string Name => _super.Name;

    /// <summary>Random id fixed at creation; send streams name the pool they came from by it.</summary>
    public ulong Id => _super.PoolId;

    /// <summary>Bytes per block: the unit of allocation, checksums and versions.</summary>
    public int BlockSize => _super.BlockSize;

    /// <summary>The device the pool lives on.</summary>
    public IBlockDevice Device => _device;

    /// <summary>Raised (on a pool thread) after a volume or snapshot appears, disappears or changes size.</summary>
    public event Action? Changed;

    private int SegmentBlocks => _super.SegmentBlocks;

    private long DataOffset => _super.DataOffset;

    /// <summary>Formats <paramref name="device"/> as an empty pool and opens it.</summary>
    /// <exception cref="PoolConfigurationException">Bad options, a device too small, or one that holds data or a pool (without <see cref="PoolCreateOptions.Force"/>).</exception>
    public static async Task<Pool> CreateAsync(IBlockDevice device, PoolCreateOptions options, PoolOpenOptions? open = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        Names.Check(options.Name, "pool");
        int blockSize = options.BlockSize;
        if (blockSize < PoolCreateOptions.MinBlockSize || blockSize > PoolCreateOptions.MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
            throw new PoolConfigurationException($"Block size {blockSize} is not a power of two from 4 KiB to 1 MiB; the default is {PoolCreateOptions.DefaultBlockSize / 1024} KiB.");
        if (blockSize % device.SectorSize != 0)
            throw new PoolConfigurationException($"Block size {blockSize} is not a multiple of the device's {device.SectorSize}-byte sector.");
        if (!options.Force)
            await CheckBlankAsync(device, cancellationToken).ConfigureAwait(false);
        long segmentBytes = device is RaidArray array ? Lcm(blockSize, array.Geometry.StripeDataSize) : Math.Max(blockSize, 1024 * 1024);
        if (segmentBytes > 64 * 1024 * 1024)
            throw new PoolConfigurationException($"A {blockSize}-byte block on this array's {segmentBytes}-byte stripes gives segments of {segmentBytes} bytes; choose a block size that divides the stripe.");
        long logLength = Math.Clamp(device.Capacity / 256 / 4096 * 4096, 1024 * 1024, 256 * 1024 * 1024);
        long logOffset = PoolSuperblock.Copies * PoolSuperblock.Size;
        long dataOffset = (logOffset + logLength + segmentBytes - 1) / segmentBytes * segmentBytes;
        long segments = (device.Capacity - dataOffset) / segmentBytes;
        if (segments < 8)
            throw new PoolConfigurationException($"Device '{device.Name}' ({device.Capacity} bytes) is too small for a pool of {segmentBytes}-byte segments; it needs at least {dataOffset + 8 * segmentBytes} bytes.");
        var super = new PoolSuperblock
        {
            PoolId = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)),
            Name = options.Name,
            Sequence = 1,
            BlockSize = blockSize,
            SegmentBlocks = (int)(segmentBytes / blockSize),
            LogOffset = logOffset,
            LogLength = logLength,
            DataOffset = dataOffset,
            BlockCount = segments * (segmentBytes / blockSize),
            Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        };
        for (int copy = 0; copy < PoolSuperblock.Copies; copy++)
            await device.WriteAsync(copy * PoolSuperblock.Size, (super with { Sequence = copy }).Encode(), cancellationToken: cancellationToken).ConfigureAwait(false);
        await device.FlushAsync(cancellationToken).ConfigureAwait(false);
        return await OpenAsync(device, open, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Opens the pool on <paramref name="device"/>: reads the newest superblock and checkpoint, replays the log.</summary>
    /// <exception cref="PoolConfigurationException">No pool on the device, or one that is damaged or of a newer format.</exception>
    public static async Task<Pool> OpenAsync(IBlockDevice device, PoolOpenOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new PoolOpenOptions();
        var head = new byte[PoolSuperblock.Copies * PoolSuperblock.Size];
        await device.ReadAsync(0, head, cancellationToken).ConfigureAwait(false);
        PoolSuperblock? super = null;
        for (int copy = 0; copy < PoolSuperblock.Copies; copy++)
        {
            var candidate = PoolSuperblock.TryDecode(head.AsSpan(copy * PoolSuperblock.Size, PoolSuperblock.Size));
            if (candidate is not null && (super is null || candidate.Sequence > super.Sequence))
                super = candidate;
        }
        if (super is null)
        {
            throw new PoolConfigurationException(PoolSuperblock.HasMagic(head) || PoolSuperblock.HasMagic(head.AsSpan(PoolSuperblock.Size))
                ? $"Device '{device.Name}' has a damaged pool superblock (both copies fail their checksum)."
                : $"Device '{device.Name}' holds no pool; create one with 'storage pool create'.");
        }
        CheckLayout(device, super);
        var (state, checkpointBlocks) = await ReadCheckpointAsync(device, super, cancellationToken).ConfigureAwait(false);
        var replay = await ReplayAsync(device, super, state, cancellationToken).ConfigureAwait(false);
        options.Log?.Invoke($"pool {super.Name}: checkpoint at transaction {super.CheckpointTxg}, {replay.Txg - super.CheckpointTxg} replayed from the log");
        return new Pool(device, super, state, replay.Txg, replay.Head, replay.Used, checkpointBlocks, options);
    }

    /// <summary>True when the device's first bytes carry a pool superblock (intact or not).</summary>
    public static async Task<bool> IsPoolAsync(IBlockDevice device, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        var head = new byte[PoolSuperblock.Copies * PoolSuperblock.Size];
        await device.ReadAsync(0, head, cancellationToken).ConfigureAwait(false);
        return PoolSuperblock.HasMagic(head) || PoolSuperblock.HasMagic(head.AsSpan(PoolSuperblock.Size));
    }

    private static async Task CheckBlankAsync(IBlockDevice device, CancellationToken cancellationToken)
    {
        var head = new byte[(int)Math.Min(PreambleBytes, device.Capacity)];
        await device.ReadAsync(0, head, cancellationToken).ConfigureAwait(false);
        for (int copy = 0; copy < PoolSuperblock.Copies; copy++)
        {
            var slice = head.AsSpan(copy * PoolSuperblock.Size, PoolSuperblock.Size);
            if (!PoolSuperblock.HasMagic(slice))
                continue;
            PoolSuperblock? existing;
            try
            {
                existing = PoolSuperblock.TryDecode(slice);
            }
            catch (PoolConfigurationException e)
            {
                throw new PoolConfigurationException($"Device '{device.Name}' holds a pool of a newer format ({e.Message}); refusing to overwrite it. Use --force to destroy it.", e);
            }
            throw new PoolConfigurationException($"Device '{device.Name}' already holds pool '{existing?.Name ?? "(damaged)"}'; refusing to overwrite it. Use --force to destroy it and every volume in it.");
        }
        if (head.AsSpan().ContainsAnyExcept((byte)0))
            throw new PoolConfigurationException($"Device '{device.Name}' holds data (its first {head.Length / 1024} KiB are not zero); refusing to overwrite it. Use --force to format it anyway.");
    }

    private static void CheckLayout(IBlockDevice device, PoolSuperblock super)
    {
        bool sane = super.BlockSize is >= PoolCreateOptions.MinBlockSize and <= PoolCreateOptions.MaxBlockSize
            && super.SegmentBlocks > 0 && super.BlockCount % super.SegmentBlocks == 0
            && super.LogOffset >= PoolSuperblock.Copies * PoolSuperblock.Size && super.LogLength >= 4096
            && super.DataOffset >= super.LogOffset + super.LogLength;
        if (!sane)
            throw new PoolConfigurationException($"Device '{device.Name}': pool '{super.Name}' has an impossible layout in its superblock.");
        if (super.DataOffset + super.BlockCount * super.BlockSize > device.Capacity)
            throw new PoolConfigurationException($"Device '{device.Name}' ({device.Capacity} bytes) is smaller than pool '{super.Name}' needs ({super.DataOffset + super.BlockCount * super.BlockSize} bytes): is this the right device, assembled with every member?");
    }

    private static long Lcm(long a, long b)
    {
        long x = a, y = b;
        while (y != 0)
            (x, y) = (y, x % y);
        return a / x * b;
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_failure is { } failure)
            throw new IOException($"Pool '{Name}' stopped after a failed commit: {failure.Message}. Reopen it to recover the last committed state.", failure);
    }

    private void RaiseChanged()
    {
        try
        {
            Changed?.Invoke();
        }
#pragma warning disable CA1031 // a subscriber's failure must not undo a committed change
        catch (Exception e)
#pragma warning restore CA1031
        {
            _options.Log?.Invoke($"pool {Name}: a change listener failed: {e.Message}");
        }
    }

    private async Task CommitPeriodicallyAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                await Task.Delay(_options.CommitInterval, _stop.Token).ConfigureAwait(false);
                try
                {
                    await CommitAsync(_stop.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or BlockDeviceException or ArrayFailedException)
                {
                    _options.Log?.Invoke($"pool {Name}: background commit failed: {e.Message}");
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Commits, writes a checkpoint and stops. The device stays open.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 2) != 0)
            return;
        await _stop.CancelAsync().ConfigureAwait(false);
        await _committer.ConfigureAwait(false);
        if (_failure is null)
            await CommitCoreAsync(forceCheckpoint: true, CancellationToken.None).ConfigureAwait(false);
        Volatile.Write(ref _disposed, 1);
        _stop.Dispose();
    }

    /// <inheritdoc cref="DisposeAsync"/>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
