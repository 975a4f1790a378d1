using Storage.Devices;
using Storage.Nbd.Client;
using Storage.Nbd.Protocol;

namespace Storage.Nbd;

/// <summary>
/// A block device on another machine, reached over NBD (our server, nbdkit, qemu-nbd): how a pool member or a mirror
/// lives on another node without a protocol of our own. Requests run concurrently, spread over several connections
/// when the server allows multi-conn; a broken connection is replaced and the requests that were on it are sent again
/// (up to <see cref="NbdClientOptions.ReconnectAttempts"/> times, backing off), so a server restart is a pause, not an
/// error. Sector size is the server's minimum block size (512 or 4096); requests larger than the server's maximum are
/// split. All members are thread-safe.
/// </summary>
/// <remarks>
/// Writes are durable after <see cref="IBlockDevice.FlushAsync"/> (NBD_CMD_FLUSH) or with FUA (NBD_CMD_FLAG_FUA, or a
/// flush after the write when the server cannot do FUA). Trims are passed on when the server takes them and are a
/// no-op otherwise, as <see cref="IBlockDevice.TrimAsync"/> allows. A request cannot be cancelled once sent.
/// </remarks>
public sealed class NbdClientDevice : BlockDevice, IAsyncDisposable
{
    private readonly NbdClientOptions _options;
    private readonly Slot[] _slots;
    private readonly ExportInfo _export;
    private readonly int _maxRequest;
    private readonly UnflushedWrites? _unflushed;
    private int _next;

    private NbdClientDevice(NbdClientOptions options, NbdClientConnection first, int sectorSize)
        : base(options.ToString(), first.Export.Size / sectorSize * sectorSize, sectorSize)
    {
        _options = options;
        _export = first.Export;
        int connections = _export.Has(NbdProtocol.TxCanMultiConn) && !options.ReplayUnflushed ? options.Connections : 1;
        if (options.ReplayUnflushed && _export.Has(NbdProtocol.TxSendFlush))
            _unflushed = new UnflushedWrites();
        _slots = [.. Enumerable.Range(0, connections).Select(_ => new Slot())];
        _slots[0].Connection = first;
        // Whole sectors, at most 4 MiB a request (so one large read does not hold a connection for long).
        _maxRequest = Math.Max(sectorSize, Math.Min(_export.MaximumBlock, 4 << 20) / sectorSize * sectorSize);
    }

    /// <summary>True when the server refuses writes; writes and trims then throw <see cref="NotSupportedException"/>.</summary>
    public bool IsReadOnly => _export.Has(NbdProtocol.TxReadOnly);

    /// <summary>Connections in use: more than one only when the server allows multi-conn.</summary>
    public int ConnectionCount => _slots.Length;

    /// <summary>Connections replaced after they broke, since the device was opened.</summary>
    public long Reconnects => Interlocked.Read(ref _reconnects);

    private long _reconnects;
    private long _lostWrites;
    private long _unreported;
    private volatile string? _lastLoss;

    /// <summary>
    /// Acknowledged writes and trims that a restarted server refused when they were sent again: lost. The flush after
    /// such a loss fails once, saying so.
    /// </summary>
    public long LostWrites => Interlocked.Read(ref _lostWrites);

    /// <summary>Connects to the export and negotiates it.</summary>
    /// <exception cref="ArgumentException">The options are inconsistent.</exception>
    /// <exception cref="NbdConfigurationException">The server has no such export or refused it.</exception>
    /// <exception cref="BlockDeviceException">The server cannot be reached or does not speak NBD.</exception>
    public static async Task<NbdClientDevice> ConnectAsync(NbdClientOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        NbdClientConnection first;
        try
        {
            first = await NbdClientConnection.OpenAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ConnectionLostException or InvalidDataException)
        {
            throw new BlockDeviceException(options.ToString(), $"cannot open the NBD export: {e.Message}", e);
        }
        int sector = first.Export.MinimumBlock <= 512 ? 512 : first.Export.MinimumBlock == 4096 ? 4096 : 0;
        if (sector == 0 || first.Export.Size < sector)
        {
            await first.DisposeAsync().ConfigureAwait(false);
            throw new BlockDeviceException(options.ToString(), $"the export's minimum block size is {first.Export.MinimumBlock} bytes and its size {first.Export.Size}; a device needs 512 or 4096-byte sectors.", null);
        }
        var device = new NbdClientDevice(options, first, sector);
        try
        {
            for (int i = 1; i < device._slots.Length; i++)
                device._slots[i].Connection = await NbdClientConnection.OpenAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ConnectionLostException or InvalidDataException)
        {
            await device.DisposeAsync().ConfigureAwait(false);
            throw new BlockDeviceException(options.ToString(), $"cannot open connection {device._slots.Count(s => s.Connection is not null) + 1}: {e.Message}", e);
        }
        return device;
    }

    /// <inheritdoc />
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        for (int done = 0; done < buffer.Length;)
        {
            int length = Math.Min(_maxRequest, buffer.Length - done);
            await RequestAsync(NbdProtocol.CmdRead, 0, offset + done, length, buffer.Slice(done, length), default, cancellationToken).ConfigureAwait(false);
            done += length;
        }
    }

    /// <inheritdoc />
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();
        bool fua = forceUnitAccess && _export.Has(NbdProtocol.TxSendFua);
        if (_unflushed is not null && _unflushed.Bytes + buffer.Length > _options.ReplayLimitBytes)
            await FlushCoreAsync(cancellationToken).ConfigureAwait(false);   // keeps the copies bounded
        for (int done = 0; done < buffer.Length;)
        {
            int length = Math.Min(_maxRequest, buffer.Length - done);
            var piece = buffer.Slice(done, length);
            var held = _unflushed?.Write(offset + done, piece.Span);
            await HeldAsync(held, RequestAsync(NbdProtocol.CmdWrite, fua ? NbdProtocol.CmdFlagFua : (ushort)0, offset + done, length, default, piece, cancellationToken)).ConfigureAwait(false);
            done += length;
        }
        if (forceUnitAccess && !fua)
            await FlushCoreAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        if (!_export.Has(NbdProtocol.TxSendFlush))
            return;   // the server does not cache writes (it says so by not offering flush)
        // With multi-conn a flush on one connection covers writes completed on all; without it there is one connection.
        var covered = _unflushed?.Covered();
        await RequestAsync(NbdProtocol.CmdFlush, 0, 0, 0, default, default, cancellationToken).ConfigureAwait(false);
        if (covered is not null)
            _unflushed!.Flushed(covered);
        if (Interlocked.Exchange(ref _unreported, 0) is > 0 and long lost)
        {
            throw new BlockDeviceException(Name, $"{lost} acknowledged write(s) or trim(s) were lost: the server restarted before making them durable " +
                $"and refused them when they were sent again ({_lastLoss}).", null);
        }
    }

    /// <summary>Waits for a write or trim that <see cref="_unflushed"/> holds (<paramref name="held"/>), marking it acknowledged or dropping it.</summary>
    private async Task HeldAsync(object? held, Task request)
    {
        try
        {
            await request.ConfigureAwait(false);
        }
        catch when (held is not null)
        {
            _unflushed!.Failed(held);
            throw;
        }
        if (held is not null)
            UnflushedWrites.Acknowledged(held);
    }

    /// <inheritdoc />
    protected override async ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();
        if (!_export.Has(NbdProtocol.TxSendTrim))
            return;
        for (long done = 0; done < length;)
        {
            int part = (int)Math.Min(length - done, 1L << 30);
            var held = _unflushed?.Trim(offset + done, part);
            await HeldAsync(held, RequestAsync(NbdProtocol.CmdTrim, 0, offset + done, part, default, default, cancellationToken)).ConfigureAwait(false);
            done += part;
        }
    }

    private void ThrowIfReadOnly()
    {
        if (IsReadOnly)
            throw new NotSupportedException($"{Name} is a read-only export.");
    }

    /// <summary>Sends a request on the next connection; a broken connection is replaced and the request sent again.</summary>
    private async Task RequestAsync(ushort command, ushort flags, long offset, int length, Memory<byte> read, ReadOnlyMemory<byte> write, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var slot = _slots[(uint)Interlocked.Increment(ref _next) % (uint)_slots.Length];
        var delay = _options.ReconnectDelay;
        for (int attempt = 0; ; attempt++)
        {
            NbdClientConnection? connection = null;
            try
            {
                connection = await ConnectionAsync(slot, cancellationToken).ConfigureAwait(false);
                int error = await connection.SendAsync(command, flags, offset, length, read, write, cancellationToken).ConfigureAwait(false);
                if (error != 0)
                    throw Failure(command, offset, length, error);
                return;
            }
            catch (Exception e) when (e is ConnectionLostException or InvalidDataException)
            {
                if (connection is not null)
                    await ReplaceAsync(slot, connection).ConfigureAwait(false);
                if (attempt >= _options.ReconnectAttempts || IsDisposed)
                    throw new BlockDeviceException(Name, offset, length, $"the NBD connection broke and {attempt} reconnection(s) did not help: {e.Message}", e);
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                delay *= 2;
            }
        }
    }

    private async Task<NbdClientConnection> ConnectionAsync(Slot slot, CancellationToken cancellationToken)
    {
        if (slot.Connection is { IsBroken: false } current)
            return current;
        await slot.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (slot.Connection is { IsBroken: false } again)
                return again;
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            var fresh = await NbdClientConnection.OpenAsync(_options, cancellationToken).ConfigureAwait(false);
            if (fresh.Export.Size != _export.Size || fresh.Export.Has(NbdProtocol.TxReadOnly) != IsReadOnly)
            {
                await fresh.DisposeAsync().ConfigureAwait(false);
                throw new BlockDeviceException(Name, $"after reconnecting the export is another one (size {fresh.Export.Size}, was {_export.Size}); refusing to go on.", null);
            }
            if (slot.Connection is { } old)
                await old.DisposeAsync().ConfigureAwait(false);
            if (_unflushed is not null)
                await ReplayAsync(fresh, cancellationToken).ConfigureAwait(false);   // before any other request can use it
            slot.Connection = fresh;
            Interlocked.Increment(ref _reconnects);
            return fresh;
        }
        finally
        {
            slot.Gate.Release();
        }
    }

    /// <summary>
    /// Sends every write and trim not yet covered by a flush again, in order, on <paramref name="fresh"/>. One the server
    /// now refuses (its disk full or failing) is dropped, not retried forever: that write is lost, and the next flush
    /// says so (<see cref="LostWrites"/>), as a flush after a failed writeback does.
    /// </summary>
    private async Task ReplayAsync(NbdClientConnection fresh, CancellationToken cancellationToken)
    {
        try
        {
            foreach (var (offset, length, data, handle) in _unflushed!.Snapshot())
            {
                int error = data is null
                    ? await fresh.SendAsync(NbdProtocol.CmdTrim, 0, offset, length, default, default, cancellationToken).ConfigureAwait(false)
                    : await fresh.SendAsync(NbdProtocol.CmdWrite, 0, offset, length, default, data.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
                if (error != 0)
                {
                    _unflushed.Failed(handle);
                    Interlocked.Increment(ref _lostWrites);
                    Interlocked.Increment(ref _unreported);
                    _lastLoss = Failure(data is null ? NbdProtocol.CmdTrim : NbdProtocol.CmdWrite, offset, length, error).Message;
                }
            }
        }
        catch
        {
            await fresh.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static async Task ReplaceAsync(Slot slot, NbdClientConnection broken)
    {
        await slot.Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (ReferenceEquals(slot.Connection, broken))
            {
                slot.Connection = null;
                await broken.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            slot.Gate.Release();
        }
    }

    private BlockDeviceException Failure(ushort command, long offset, int length, int error)
    {
        string what = command switch
        {
            NbdProtocol.CmdRead => "read",
            NbdProtocol.CmdWrite => "write",
            NbdProtocol.CmdFlush => "flush",
            _ => "trim",
        };
        string name = error switch
        {
            NbdErrno.EPERM => "EPERM (not permitted)",
            NbdErrno.EIO => "EIO (I/O error)",
            NbdErrno.ENOMEM => "ENOMEM",
            NbdErrno.EINVAL => "EINVAL (invalid request)",
            NbdErrno.ENOSPC => "ENOSPC (no space left)",
            NbdErrno.EOVERFLOW => "EOVERFLOW",
            NbdErrno.ESHUTDOWN => "ESHUTDOWN (the server is shutting down)",
            _ => $"error {error}",
        };
        // ENOSPC keeps its errno in the cause, so that a server in front of this device reports no space too.
        var cause = error == NbdErrno.ENOSPC ? new IOException("no space left on the remote export", error) : null;
        return new BlockDeviceException(Name, offset, length, $"the server failed the {what}: {name}", cause);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing && !_disposingAsync)
            DisposeConnectionsAsync().AsTask().GetAwaiter().GetResult();
        base.Dispose(disposing);
    }

    /// <summary>Disconnects every connection (NBD_CMD_DISC) and closes them.</summary>
    public async ValueTask DisposeAsync()
    {
        _disposingAsync = true;
        base.Dispose();   // marks the device disposed; the connections close below without blocking a thread
        await DisposeConnectionsAsync().ConfigureAwait(false);
    }

    private volatile bool _disposingAsync;

    private async ValueTask DisposeConnectionsAsync()
    {
        foreach (var slot in _slots)
        {
            var connection = Interlocked.Exchange(ref slot.Connection, null);
            if (connection is not null)
                await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    private sealed class Slot
    {
        public NbdClientConnection? Connection;

        public SemaphoreSlim Gate { get; } = new(1, 1);
    }
}
