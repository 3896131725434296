// vite's `?raw` imports (a file's text), which the DOM tests use for the real page markup.
declare module "*?raw" {
  const text: string;
  export default text;
}
