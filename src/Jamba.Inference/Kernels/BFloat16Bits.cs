using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Jamba.Inference.Kernels;

/// <summary>Element access (one at a time, or 16 at a time with AVX-512) to raw fp32 or bf16 tensor memory for the hand-written CPU kernels (bf16 is the upper half of
/// an fp32; stores round to nearest even, as libtorch does).</summary>
internal static class BFloat16Bits
{
    /// <summary>Element <paramref name="i"/> of a bf16 (<paramref name="half"/>) or fp32 buffer, as fp32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Load(nint p, long i, bool half) =>
        half ? BitConverter.UInt32BitsToSingle((uint)((ushort*)p)[i] << 16) : ((float*)p)[i];

    /// <summary>Writes <paramref name="v"/> to element <paramref name="i"/>, rounded to bf16 when <paramref name="half"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Store(nint p, long i, float v, bool half)
    {
        if (half) ((ushort*)p)[i] = ToBits(v);
        else ((float*)p)[i] = v;
    }

    /// <summary><paramref name="v"/> rounded to the nearest bf16 (ties to even), as fp32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Round(float v) => BitConverter.UInt32BitsToSingle((uint)ToBits(v) << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort ToBits(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return float.IsNaN(v) ? (ushort)((bits >> 16) | 0x40) : (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>The fp32 value of bf16 <paramref name="bits"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FromBits(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>16 consecutive elements (bf16 widened, or fp32) at element <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> Load16(nint p, long i, bool half) => half
        ? Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p + i)), 16).AsSingle()
        : Vector512.Load((float*)p + i);

    /// <summary>Writes 16 values at element <paramref name="i"/>, rounded to bf16 (nearest even, NaN kept) when <paramref name="half"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Store16(nint p, long i, Vector512<float> v, bool half)
    {
        if (!half)
        {
            v.Store((float*)p + i);
            return;
        }
        var bits = v.AsUInt32();
        var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) >> 16;
        var nan = ~Vector512.Equals(v, v).AsUInt32();
        rounded = Vector512.ConditionalSelect(nan, (bits >> 16) | Vector512.Create(0x40u), rounded);
        Avx512F.ConvertToVector256UInt16(rounded).Store((ushort*)p + i);
    }

    /// <summary>Each lane rounded to the nearest bf16 (ties to even), kept as fp32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Round16(Vector512<float> v)
    {
        var bits = v.AsUInt32();
        var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) & Vector512.Create(0xFFFF0000u);
        return Vector512.ConditionalSelect(Vector512.Equals(v, v).AsUInt32(), rounded, bits).AsSingle();
    }
}
