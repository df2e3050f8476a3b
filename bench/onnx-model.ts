/**
 * Hand-written ONNX protobuf encoder for the tiny peer models the kernel benchmark feeds to
 * onnxruntime-web: one MatMul with a constant weight, and single-query attention. Only the handful
 * of onnx.proto fields those graphs need are encoded (field numbers from onnx/onnx.proto3):
 *
 *   ModelProto      ir_version=1 (varint), graph=7, opset_import=8
 *   OperatorSetId   domain=1, version=2
 *   GraphProto      node=1, name=2, initializer=5, input=11, output=12
 *   NodeProto       input=1, output=2, name=3, op_type=4, attribute=5
 *   AttributeProto  name=1, i=3, type=20 (INT=2)
 *   TensorProto     dims=1, data_type=2 (FLOAT=1), name=8, raw_data=9
 *   ValueInfoProto  name=1, type=2;  TypeProto tensor_type=1;  TypeProto.Tensor elem_type=1, shape=2
 *   TensorShape     dim=1;  Dimension dim_value=1
 */

/** Protobuf wire types: 0 varint, 2 length-delimited. */
class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];

  varintField(field: number, value: number): this {
    this.tag(field, 0);
    this.varint(value);
    return this;
  }

  bytesField(field: number, bytes: Uint8Array): this {
    this.tag(field, 2);
    this.varint(bytes.length);
    this.chunks.push(bytes);
    return this;
  }

  stringField(field: number, text: string): this {
    return this.bytesField(field, new TextEncoder().encode(text));
  }

  messageField(field: number, message: ProtoWriter): this {
    return this.bytesField(field, message.finish());
  }

  finish(): Uint8Array {
    const total = this.chunks.reduce((sum, c) => sum + c.length, 0);
    const out = new Uint8Array(total);
    let offset = 0;
    for (const c of this.chunks) { out.set(c, offset); offset += c.length; }
    return out;
  }

  private tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  // Non-negative integers only (every field here is a size, count or enum); up to 2^53.
  private varint(value: number): void {
    const bytes: number[] = [];
    let v = value;
    while (v >= 0x80) { bytes.push((v % 0x80) | 0x80); v = Math.floor(v / 0x80); }
    bytes.push(v);
    this.chunks.push(Uint8Array.from(bytes));
  }
}

const FLOAT = 1; // TensorProto.DataType.FLOAT

function tensorType(dims: number[]): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of dims) shape.messageField(1, new ProtoWriter().varintField(1, d));
  const tensor = new ProtoWriter().varintField(1, FLOAT).messageField(2, shape);
  return new ProtoWriter().messageField(1, tensor);
}

function valueInfo(name: string, dims: number[]): ProtoWriter {
  return new ProtoWriter().stringField(1, name).messageField(2, tensorType(dims));
}

function floatInitializer(name: string, dims: number[], data: Float32Array): ProtoWriter {
  const t = new ProtoWriter();
  for (const d of dims) t.varintField(1, d);
  t.varintField(2, FLOAT).stringField(8, name);
  // raw_data is little-endian; so are typed arrays on every platform Node runs on.
  return t.bytesField(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  ints?: Record<string, number>;
}

function node(spec: NodeSpec, index: number): ProtoWriter {
  const n = new ProtoWriter();
  for (const i of spec.inputs) n.stringField(1, i);
  for (const o of spec.outputs) n.stringField(2, o);
  n.stringField(3, `${spec.op}_${index}`).stringField(4, spec.op);
  for (const [name, value] of Object.entries(spec.ints ?? {})) {
    n.messageField(5, new ProtoWriter().stringField(1, name).varintField(3, value).varintField(20, 2));
  }
  return n;
}

interface GraphSpec {
  nodes: NodeSpec[];
  inputs: Array<[string, number[]]>;
  outputs: Array<[string, number[]]>;
  initializers: Array<[string, number[], Float32Array]>;
}

function model(spec: GraphSpec): Uint8Array {
  const graph = new ProtoWriter();
  spec.nodes.forEach((n, i) => graph.messageField(1, node(n, i)));
  graph.stringField(2, 'ponder_bench');
  for (const [name, dims, data] of spec.initializers) graph.messageField(5, floatInitializer(name, dims, data));
  for (const [name, dims] of spec.inputs) graph.messageField(11, valueInfo(name, dims));
  for (const [name, dims] of spec.outputs) graph.messageField(12, valueInfo(name, dims));
  return new ProtoWriter()
    .varintField(1, 8) // ir_version 8 (ONNX 1.13+)
    .messageField(7, graph)
    .messageField(8, new ProtoWriter().stringField(1, '').varintField(2, 17)) // default domain, opset 17
    .finish();
}

/**
 * Y[M,N] = X[M,K] · B[K,N] with B a constant initializer. B is the transposed PyTorch weight
 * W[N,K]: this is how exporters write nn.Linear, and the layout onnxruntime prepacks at load.
 */
export function matMulModel(M: number, K: number, N: number, weightKN: Float32Array): Uint8Array {
  return model({
    nodes: [{ op: 'MatMul', inputs: ['X', 'B'], outputs: ['Y'] }],
    inputs: [['X', [M, K]]],
    outputs: [['Y', [M, N]]],
    initializers: [['B', [K, N], weightKN]],
  });
}

/**
 * One query per head over a cache of T positions, heads-major with K already transposed (the
 * peer's favourable layout, so the graph has no Transpose):
 *   Q[H,1,D], Kt[H,D,T], V[H,T,D] → O[H,1,D] = softmax(Q·Kt · scale) · V
 */
export function attentionModel(H: number, T: number, D: number, scale: number): Uint8Array {
  return model({
    nodes: [
      { op: 'MatMul', inputs: ['Q', 'Kt'], outputs: ['S'] },
      { op: 'Mul', inputs: ['S', 'scale'], outputs: ['Ss'] },
      { op: 'Softmax', inputs: ['Ss'], outputs: ['P'], ints: { axis: 2 } }, // last axis (no negative varints here)
      { op: 'MatMul', inputs: ['P', 'V'], outputs: ['O'] },
    ],
    inputs: [['Q', [H, 1, D]], ['Kt', [H, D, T]], ['V', [H, T, D]]],
    outputs: [['O', [H, 1, D]]],
    initializers: [['scale', [], Float32Array.of(scale)]],
  });
}
