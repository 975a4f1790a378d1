using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Storage.Native;

namespace Storage.Devices;

/// <summary>
/// A device on an open Linux file descriptor: the I/O code shared by <see cref="FileBlockDevice"/> and
/// <see cref="RawBlockDevice"/>. <see cref="IBlockDevice.FlushAsync"/> is fdatasync; a force-unit-access write is the
/// write followed by fdatasync; trim punches a hole (fallocate) and writes zeros where that is unsupported, so
/// trimmed ranges read as zeros.
/// </summary>
/// <remarks>
/// <para>Where a call runs: a read or write of up to <see cref="InlineLimit"/> bytes that cannot wait for a disk is
/// done on the caller's thread and completes before the call returns, since handing it to the thread pool costs more
/// than the copy itself — on a file on tmpfs or ramfs, and through the page cache of any other file system whatever
/// it serves without waiting (preadv2/pwritev2 with RWF_NOWAIT). Everything else — larger transfers, what the page
/// cache does not hold, O_DIRECT, fdatasync, fallocate — is a blocking call on the thread pool, so callers with many
/// requests in flight keep them in flight.</para>
/// <para>With O_DIRECT (<see cref="IsDirectIo"/>) the kernel needs memory aligned to <see cref="DirectIoAlignment"/>
/// bytes. Native memory that is already aligned is passed through; any other buffer (every managed array) is
/// copied through pooled aligned buffers of 256 KiB, one at a time per call. Once warm, no path allocates per
/// call. Calls may run concurrently, as <see cref="IBlockDevice"/> allows.</para>
/// <para><see cref="ReadWithoutWaiting"/> and <see cref="WriteWithoutWaiting"/> do the same for transfers of any size,
/// for a caller that prefers copying in place to the handoff whatever the size (a server with one export per file).</para>
/// </remarks>
public abstract class HandleBlockDevice : BlockDevice, INoWaitBlockDevice
{
    /// <summary>Memory alignment passed through to O_DIRECT without a copy.</summary>
    public const int DirectIoAlignment = AlignedBuffer.Alignment;

    /// <summary>
    /// Largest read or write done on the caller's thread. Above it the copy costs more than the handoff, and the
    /// caller gets on (receiving the next request, starting the next member's I/O) while a pool thread copies:
    /// measured with 64 KiB, arrays lost a quarter of their 1 MiB sequential rate (their chunk I/Os no longer ran
    /// side by side); 4 KiB requests gain a fifth to a half.
    /// </summary>
    public const int InlineLimit = 16 << 10;

    private readonly SafeFileHandle _handle;
    private readonly bool _memoryFileSystem;
    private int _punchHoleUnsupported;
    private int _noWaitReadUnsupported;
    private int _noWaitWriteUnsupported;

    private protected HandleBlockDevice(string name, SafeFileHandle handle, long capacity, int sectorSize, bool directIo, bool readOnly, bool memoryFileSystem = false)
        : base(name, capacity, sectorSize)
    {
        _handle = handle;
        IsDirectIo = directIo;
        IsReadOnly = readOnly;
        _memoryFileSystem = memoryFileSystem && !directIo;
    }

    /// <summary>True when the descriptor has O_DIRECT: I/O bypasses the page cache.</summary>
    public bool IsDirectIo { get; }

    /// <summary>True when opened read-only: writes and trims throw <see cref="NotSupportedException"/>.</summary>
    public bool IsReadOnly { get; }

    /// <summary>The descriptor, for tests that inspect it.</summary>
    internal SafeFileHandle Handle => _handle;

    /// <inheritdoc />
    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (IsDirectIo)
            return ReadDirectIoAsync(offset, buffer, cancellationToken);
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled(cancellationToken);
        int done;
        try
        {
            done = buffer.Length > InlineLimit ? 0 : ReadWithoutWaitingCore(offset, buffer.Span);
        }
        catch (BlockDeviceException e)
        {
            return ValueTask.FromException(e);
        }
        return done == buffer.Length ? ValueTask.CompletedTask : ReadExactlyAsync(offset + done, buffer[done..], cancellationToken);
    }

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The device is read-only.</exception>
    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();
        if (IsDirectIo)
            return WriteDirectIoAsync(offset, buffer, forceUnitAccess, cancellationToken);
        if (forceUnitAccess)
            return WriteExactlyAsync(offset, buffer, forceUnitAccess, cancellationToken);
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled(cancellationToken);
        int done;
        try
        {
            done = buffer.Length > InlineLimit ? 0 : WriteWithoutWaitingCore(offset, buffer.Span);
        }
        catch (BlockDeviceException e)
        {
            return ValueTask.FromException(e);
        }
        return done == buffer.Length ? ValueTask.CompletedTask : WriteExactlyAsync(offset + done, buffer[done..], false, cancellationToken);
    }

    /// <inheritdoc />
    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        if (!_memoryFileSystem)
            return FlushOnThreadPoolAsync(cancellationToken);
        // fdatasync of a memory file has nothing to wait for.
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled(cancellationToken);
        try
        {
            SyncData(0, Capacity);
            return ValueTask.CompletedTask;
        }
        catch (BlockDeviceException e)
        {
            return ValueTask.FromException(e);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushOnThreadPoolAsync(CancellationToken cancellationToken)
    {
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        cancellationToken.ThrowIfCancellationRequested();
        SyncData(0, Capacity);
    }

    /// <inheritdoc />
    public int ReadWithoutWaiting(long offset, Span<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        return ReadWithoutWaitingCore(offset, buffer);
    }

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The device is read-only.</exception>
    public int WriteWithoutWaiting(long offset, ReadOnlySpan<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        ThrowIfReadOnly();
        return WriteWithoutWaitingCore(offset, buffer);
    }

    /// <summary>
    /// Reads on this thread as much of the range as needs no disk: all of it on a memory file system, else what the
    /// page cache holds (RWF_NOWAIT), stopping at the first byte that would wait; nothing with O_DIRECT. Returns the
    /// bytes read.
    /// </summary>
    private unsafe int ReadWithoutWaitingCore(long offset, Span<byte> buffer)
    {
        if (IsDirectIo)
            return 0;
        fixed (byte* start = buffer)
            return TransferWithoutWaiting(offset, start, buffer.Length, write: false, ref _noWaitReadUnsupported);
    }

    /// <summary>Writes on this thread as much of the range as needs no waiting (see <see cref="ReadWithoutWaitingCore"/>).</summary>
    private unsafe int WriteWithoutWaitingCore(long offset, ReadOnlySpan<byte> buffer)
    {
        if (IsDirectIo)
            return 0;
        fixed (byte* start = buffer)
            return TransferWithoutWaiting(offset, start, buffer.Length, write: true, ref _noWaitWriteUnsupported);
    }

    /// <summary>
    /// Reads or writes on this thread as much as needs no waiting, stopping where the kernel would wait or where the
    /// file system has no RWF_NOWAIT (remembered in <paramref name="noWaitUnsupported"/>). Returns the bytes done;
    /// throws <see cref="BlockDeviceException"/> for I/O errors and for a read past the end of a short file.
    /// </summary>
    private unsafe int TransferWithoutWaiting(long offset, byte* start, int length, bool write, ref int noWaitUnsupported)
    {
        if (!_memoryFileSystem && Volatile.Read(ref noWaitUnsupported) != 0)
            return 0;
        int done = 0;
        while (done < length)
        {
            var vector = new IoVec { Base = start + done, Length = (nuint)(length - done) };
            long at = offset + done;
            nint n = (_memoryFileSystem, write) switch
            {
                (true, false) => LibC.Pread(_handle, vector.Base, vector.Length, at),
                (true, true) => LibC.Pwrite(_handle, vector.Base, vector.Length, at),
                (false, false) => LibC.Preadv2(_handle, &vector, 1, at, LibC.RwfNoWait),
                (false, true) => LibC.Pwritev2(_handle, &vector, 1, at, LibC.RwfNoWait),
            };
            if (n > 0)
            {
                done += (int)n;
                continue;
            }
            if (n == 0)
            {
                if (!write)
                    throw new BlockDeviceException(Name, at, length - done, "read past the end of the file: the file is shorter than the device");
                return done;
            }
            int errno = Marshal.GetLastPInvokeError();
            switch (errno)
            {
                case LibC.EIntr:
                    continue;
                case LibC.EAgain:
                    return done;
                case LibC.EOpNotSupp:
                case LibC.EInval when !_memoryFileSystem:
                    // No RWF_NOWAIT here (kernels before 6.0 refuse it for buffered writes with EINVAL): the
                    // asynchronous path does the plain call, and reports the error if it was a real one.
                    Volatile.Write(ref noWaitUnsupported, 1);
                    return done;
                default:
                    // The errno travels as the inner exception's HResult, as the runtime's own I/O errors carry it, so
                    // that callers can tell a full file system (ENOSPC) from a failing disk.
                    throw new BlockDeviceException(Name, at, length - done, $"{(write ? "write" : "read")} failed: {LibC.Describe(errno)}",
                        new IOException(LibC.Describe(errno), errno));
            }
        }
        return done;
    }

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The device is read-only.</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        cancellationToken.ThrowIfCancellationRequested();
        if (TryPunchHole(offset, length))
            return;
        var zeros = AlignedBufferPool.Shared.Rent();
        try
        {
            zeros.GetSpan().Clear();
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(zeros.Length, length - done);
                await RandomAccess.WriteAsync(_handle, zeros.Memory[..n], offset + done, cancellationToken).ConfigureAwait(false);
                done += n;
            }
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            throw new BlockDeviceException(Name, offset, length, $"trim (writing zeros) failed: {e.Message}", e);
        }
        finally
        {
            AlignedBufferPool.Shared.Return(zeros);
        }
    }

    /// <summary>Takes the zero-writing trim path, as on a file system without hole punching (for tests).</summary>
    internal void DisablePunchHole() => Volatile.Write(ref _punchHoleUnsupported, 1);

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _handle.Dispose();
        base.Dispose(disposing);
    }

    private bool TryPunchHole(long offset, long length)
    {
        // fallocate's off_t is 32-bit in 32-bit processes; those take the zero-writing path.
        if (!Environment.Is64BitProcess || Volatile.Read(ref _punchHoleUnsupported) != 0)
            return false;
        while (LibC.Fallocate(_handle, LibC.FallocFlPunchHole | LibC.FallocFlKeepSize, offset, length) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.EIntr)
                continue;
            if (errno is LibC.EOpNotSupp or LibC.ENoSys)
            {
                Volatile.Write(ref _punchHoleUnsupported, 1);
                return false;
            }
            throw new BlockDeviceException(Name, offset, length, $"trim (fallocate punch hole) failed: {LibC.Describe(errno)}");
        }
        return true;
    }

    private void SyncData(long offset, long length)
    {
        while (LibC.Fdatasync(_handle) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != LibC.EIntr)
                throw new BlockDeviceException(Name, offset, length, $"fdatasync failed: {LibC.Describe(errno)}");
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadExactlyAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        try
        {
            for (int done = 0; done < buffer.Length;)
            {
                int n = await RandomAccess.ReadAsync(_handle, buffer[done..], offset + done, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                    throw new BlockDeviceException(Name, offset + done, buffer.Length - done, "read past the end of the file: the file is shorter than the device");
                done += n;
            }
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            throw new BlockDeviceException(Name, offset, buffer.Length, $"read failed: {e.Message}", e);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadDirectIoAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        // The pin is held across the I/O so that the address checked is the address the kernel gets.
        MemoryHandle pin = default;
        try
        {
            if (TryPinAligned(buffer, ref pin))
            {
                await ReadExactlyAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
                return;
            }
            var bounce = AlignedBufferPool.Shared.Rent();
            try
            {
                for (int done = 0; done < buffer.Length;)
                {
                    int n = Math.Min(bounce.Length, buffer.Length - done);
                    await ReadExactlyAsync(offset + done, bounce.Memory[..n], cancellationToken).ConfigureAwait(false);
                    bounce.GetSpan()[..n].CopyTo(buffer.Span[done..]);
                    done += n;
                }
            }
            finally
            {
                AlignedBufferPool.Shared.Return(bounce);
            }
        }
        finally
        {
            pin.Dispose();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteExactlyAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        try
        {
            await RandomAccess.WriteAsync(_handle, buffer, offset, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            throw new BlockDeviceException(Name, offset, buffer.Length, $"write failed: {e.Message}", e);
        }
        if (forceUnitAccess)
            SyncData(offset, buffer.Length);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteDirectIoAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        MemoryHandle pin = default;
        try
        {
            if (TryPinAligned(buffer, ref pin))
            {
                await WriteExactlyAsync(offset, buffer, forceUnitAccess, cancellationToken).ConfigureAwait(false);
                return;
            }
            var bounce = AlignedBufferPool.Shared.Rent();
            try
            {
                for (int done = 0; done < buffer.Length;)
                {
                    int n = Math.Min(bounce.Length, buffer.Length - done);
                    buffer.Span.Slice(done, n).CopyTo(bounce.GetSpan());
                    await WriteExactlyAsync(offset + done, bounce.Memory[..n], false, cancellationToken).ConfigureAwait(false);
                    done += n;
                }
            }
            finally
            {
                AlignedBufferPool.Shared.Return(bounce);
            }
            if (forceUnitAccess)
                SyncData(offset, buffer.Length);
        }
        finally
        {
            pin.Dispose();
        }
    }

    /// <summary>
    /// Pins <paramref name="buffer"/> into <paramref name="pin"/> and returns true when O_DIRECT can use it as it
    /// is: native memory (a <see cref="MemoryManager{T}"/>) at an aligned address. Managed arrays are never
    /// relied on to be aligned, and are not pinned here.
    /// </summary>
    private static unsafe bool TryPinAligned(ReadOnlyMemory<byte> buffer, ref MemoryHandle pin)
    {
        if (!MemoryMarshal.TryGetMemoryManager(buffer, out MemoryManager<byte>? _))
            return false;
        pin = buffer.Pin();
        return AlignedBuffer.IsAligned(pin.Pointer);
    }

    private void ThrowIfReadOnly()
    {
        if (IsReadOnly)
            throw new NotSupportedException($"{Name} is open read-only.");
    }

    private static bool IsIoFailure(Exception e) => e is (IOException and not BlockDeviceException) or UnauthorizedAccessException;
}
