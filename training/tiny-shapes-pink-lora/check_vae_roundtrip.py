# Does the shipped tiny-shapes VAE reproduce pink? Round trip (encoder -> decoder) of six drawn pictures, then 300 Adam
# steps of decoder inversion (latents optimised so the decoder output matches the picture). Run from the repository root.
import sys, os, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, "training/tiny-shapes-pink-lora")
import common, data
text, unet, vae, scale = common.load_base()
rng = np.random.default_rng(0)
items=[]
for col,bg in [("pink","blue"),("pink","white"),("red","pink"),("green","pink"),("purple","white"),("red","blue")]:
    it = data.random_item(rng); it["color"]=col; it["background"]=bg; items.append(it)
imgs = np.stack([data.draw(it,(0,0)) for it in items])
with torch.no_grad():
    x = torch.from_numpy(imgs).permute(0,3,1,2).float()/127.5-1
    lat = vae.encoder(x)[:, :4]
    out = vae.decoder(lat)
rec = ((out.clamp(-1,1)+1)*127.5).permute(0,2,3,1).numpy().round().astype(np.uint8)
for it,a,b in zip(items,imgs,rec):
    print(it["color"],"on",it["background"], "classify orig:", common.classify(a), "rec:", common.classify(b), "border px orig", a[0,0], "rec", b[0,0], "center", a[32,32], b[32,32], "psnr %.1f"%common.psnr(a,b))
print("--- decoder inversion")
z = lat.clone().requires_grad_(True)
opt = torch.optim.Adam([z], lr=0.05)
for p in vae.decoder.parameters(): p.requires_grad_(False)
for i in range(300):
    opt.zero_grad(); o = vae.decoder(z); loss = ((o - x)**2).mean(); loss.backward(); opt.step()
    if i % 100 == 99: print(i, loss.item(), "latent std", z.std().item(), "enc std", lat.std().item())
with torch.no_grad(): out = vae.decoder(z)
rec = ((out.clamp(-1,1)+1)*127.5).permute(0,2,3,1).numpy().round().astype(np.uint8)
for it,a,b in zip(items,imgs,rec):
    print(it["color"],"on",it["background"], "rec:", common.classify(b), "border", b[0,0], "center", b[32,32], "psnr %.1f"%common.psnr(a,b))
