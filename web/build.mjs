// Builds the static page into dist/: the bundled script, the HTML and CSS, and the one
// onnxruntime-web WASM binary the bundle loads. The model files (model_rap.onnx, model.json)
// are not part of the build: `onnx-rap serve` or the test puts them beside index.html.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const require = createRequire(import.meta.url);

// onnxruntime-web/wasm resolves to the CPU-only (WASM) build whose Emscripten glue is
// bundled in; it fetches exactly one file at run time, this binary. With numThreads = 1 it
// runs single-threaded, so it needs no worker and no cross-origin isolation.
const WASM = 'ort-wasm-simd-threaded.wasm';

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

await build({
  entryPoints: [join(here, 'src/main.js')],
  outfile: join(dist, 'main.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});

copyFileSync(join(here, 'index.html'), join(dist, 'index.html'));
copyFileSync(join(here, 'src/style.css'), join(dist, 'style.css'));
copyFileSync(require.resolve(`onnxruntime-web/${WASM}`), join(dist, WASM));

console.log(`built ${dist}`);
